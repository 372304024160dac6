// Robustness against hostile or corrupted input (STYLE.md §4: never CHECK input). A
// seeded generator feeds random, often malformed, messages to the nodes of a working
// cluster in every role, interleaved with normal traffic. Step() may refuse a message
// with a Status but must never abort.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/raft.h"
#include "raft/test_network.h"
#include "tests/testing/status_matchers.h"

namespace stead::raft {
namespace {

using testing::TestNetwork;

pb::Message RandomMessage(std::mt19937_64& random, Raft& target) {
  auto pick = [&](uint64_t bound) { return random() % bound; };
  pb::Message message;
  // Every type, READ_INDEX and its response included, plus one unknown.
  message.set_type(static_cast<pb::MessageType>(pick(14)));
  message.set_from(pick(6));
  message.set_to(pick(8) == 0 ? pick(6) : target.id());
  const Term term = target.term();
  message.set_term(term + pick(4) - std::min<Term>(term, pick(3)));
  const Index last = target.last_index();
  message.set_index(pick(last + 6));
  message.set_log_term(pick(term + 3));
  message.set_commit(pick(last + 6));
  message.set_reject(pick(2) == 0);
  message.set_reject_hint(pick(last + 6));
  message.set_reject_hint_term(pick(term + 3));
  message.set_transfer(pick(4) == 0);
  if (pick(3) == 0) message.set_context(std::to_string(pick(5)));
  // The key a leader gives a follower's read: a forged one must be refused.
  if (pick(10) == 0) message.set_context(absl::StrCat("\x01read:", pick(6), ":", pick(5)));
  const uint64_t entry_count = pick(4);
  for (uint64_t i = 0; i < entry_count; ++i) {
    pb::Entry* entry = message.add_entries();
    entry->set_index(pick(5) == 0 ? pick(last + 6) : message.index() + 1 + i);
    entry->set_term(pick(5) == 0 ? pick(term + 3) : message.term());
    entry->set_type(static_cast<pb::EntryType>(pick(4)));
    if (entry->type() == pb::ENTRY_TYPE_CONF_CHANGE && pick(2) == 0) {
      pb::ConfChange change;
      change.set_type(static_cast<pb::ConfChangeType>(pick(5)));
      change.set_node_id(pick(7));
      entry->set_data(change.SerializeAsString());
    } else {
      entry->set_data(std::string(pick(3), 'x'));
    }
  }
  if (message.type() == pb::MESSAGE_TYPE_SNAPSHOT || pick(10) == 0) {
    pb::SnapshotMetadata* snapshot = message.mutable_snapshot();
    snapshot->set_index(pick(last + 10));
    snapshot->set_term(pick(term + 3));
    for (uint64_t i = 0; i < pick(4); ++i) snapshot->mutable_conf_state()->add_voters(pick(6));
    for (uint64_t i = 0; i < pick(2); ++i) snapshot->mutable_conf_state()->add_learners(pick(6));
  }
  return message;
}

TEST(RaftInput, RandomMessagesNeverAbort) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937_64 random(seed);
    TestNetwork net({1, 2, 3});
    net.Elect(1 + seed % 3);
    int refused = 0;
    for (int step = 0; step < 500; ++step) {
      const NodeId target = 1 + random() % 3;
      pb::Message message = RandomMessage(random, net.raft(target));
      // Refused or not, the node must survive it; a refusal carries a Status.
      const absl::Status status = net.raft(target).Step(message);
      if (!status.ok()) ++refused;
      net.ProcessReadys();
      if (step % 10 == 0) net.DeliverOnce();
      if (step % 7 == 0) net.raft(1 + random() % 3).Tick();
      if (step % 13 == 0) net.raft(target).Propose("p").IgnoreError();
    }
    // Forged messages can legitimately break Raft (it is not Byzantine fault tolerant),
    // so only survival and the core's own invariants (checked inside Step) are asserted.
    for (NodeId id : net.ids()) {
      EXPECT_LE(net.raft(id).commit_index(), net.raft(id).last_index());
    }
    EXPECT_GT(refused, 50) << "most random messages are malformed";
  }
}

}  // namespace
}  // namespace stead::raft
