#include "tests/fault/history_io.h"

#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace stead::fault {
namespace {

using Json = nlohmann::json;

constexpr char kRegisters[] = "registers.jsonl";
constexpr char kBank[] = "bank.jsonl";
constexpr char kWatches[] = "watches.jsonl";
constexpr char kBankInitial[] = "bank_initial.json";

// ---- writing ----

const char* Word(RegisterOp::Kind k) {
  switch (k) {
    case RegisterOp::Kind::kPut:
      return "put";
    case RegisterOp::Kind::kGet:
      return "get";
    case RegisterOp::Kind::kCas:
      return "cas";
  }
  return "?";
}

const char* Word(BankOp::Kind k) { return k == BankOp::Kind::kTransfer ? "transfer" : "read"; }

Json Time(int64_t ns) { return ns == kNever ? Json(nullptr) : Json(ns); }

Json ToJson(const RegisterOp& op) {
  return Json{{"kind", Word(op.kind)},
              {"key", op.key},
              {"value", op.value},
              {"expected", op.expected.has_value() ? Json(*op.expected) : Json(nullptr)},
              {"found", op.found},
              {"swapped", op.swapped},
              {"outcome", OutcomeName(op.outcome)},
              {"invoke_ns", op.invoke_ns},
              {"complete_ns", Time(op.complete_ns)},
              {"client", op.client}};
}

Json ToJson(const BankOp& op) {
  return Json{{"kind", Word(op.kind)},
              {"from", op.from},
              {"to", op.to},
              {"amount", op.amount},
              {"applied", op.applied},
              {"balances", op.balances},
              {"outcome", OutcomeName(op.outcome)},
              {"invoke_ns", op.invoke_ns},
              {"complete_ns", Time(op.complete_ns)},
              {"client", op.client}};
}

Json ToJson(const WatchRecord& record) {
  Json events = Json::array();
  for (const WatchRecord::Event& e : record.events) {
    events.push_back(Json{{"key", e.key},
                          {"value", e.value},
                          {"deleted", e.deleted},
                          {"mod_revision", e.mod_revision}});
  }
  return Json{{"watcher", record.watcher},
              {"prefix", record.prefix},
              {"start_revision", record.start_revision},
              {"events", std::move(events)},
              {"progress_revision", record.progress_revision}};
}

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

template <typename T>
std::string Lines(const std::vector<T>& items) {
  std::string text;
  // Throws on a string that is not valid UTF-8; WriteHistory turns that into a status.
  for (const T& item : items) absl::StrAppend(&text, ToJson(item).dump(), "\n");
  return text;
}

// ---- reading ----

// Reads typed fields of one JSON object; the first problem is kept and later reads
// return defaults, so a parser reads every field and checks status() once.
class Fields {
 public:
  explicit Fields(const Json& object) : object_(object) {
    if (!object_.is_object()) status_ = absl::InvalidArgumentError("not a JSON object");
  }

  std::string String(const char* name) {
    const Json* j = Get(name, Json::value_t::string, "a string");
    return j == nullptr ? std::string() : j->get<std::string>();
  }
  std::optional<std::string> StringOrNull(const char* name) {
    if (Present(name) && object_.at(name).is_null()) return std::nullopt;
    return String(name);
  }
  int64_t Int(const char* name) {
    const Json* j = Get(name, Json::value_t::number_integer, "an integer");
    return j == nullptr ? 0 : j->get<int64_t>();
  }
  int64_t TimeOrNever(const char* name) {
    if (Present(name) && object_.at(name).is_null()) return kNever;
    return Int(name);
  }
  uint32_t Uint32(const char* name) {
    const int64_t v = Int(name);
    if (v < 0 || v > std::numeric_limits<uint32_t>::max()) {
      Fail(absl::StrCat("field '", name, "' is out of range: ", v));
      return 0;
    }
    return static_cast<uint32_t>(v);
  }
  bool Bool(const char* name) {
    const Json* j = Get(name, Json::value_t::boolean, "true or false");
    return j != nullptr && j->get<bool>();
  }
  const Json& Array(const char* name) {
    static const Json kEmpty = Json::array();
    const Json* j = Get(name, Json::value_t::array, "an array");
    return j == nullptr ? kEmpty : *j;
  }
  const Json& Object(const char* name) {
    static const Json kEmpty = Json::object();
    const Json* j = Get(name, Json::value_t::object, "an object");
    return j == nullptr ? kEmpty : *j;
  }
  // Maps a word to its enumerator; `words` pairs them.
  template <typename E>
  E Enum(const char* name, std::initializer_list<std::pair<const char*, E>> words) {
    const std::string word = String(name);
    for (const auto& [w, e] : words) {
      if (word == w) return e;
    }
    if (status_.ok()) Fail(absl::StrCat("field '", name, "' has unknown value '", word, "'"));
    return words.begin()->second;
  }
  void Fail(std::string message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(std::move(message));
  }
  const absl::Status& status() const { return status_; }

 private:
  bool Present(const char* name) const { return object_.is_object() && object_.contains(name); }

  const Json* Get(const char* name, Json::value_t type, const char* what) {
    if (!status_.ok()) return nullptr;
    if (!Present(name)) {
      Fail(absl::StrCat("missing field '", name, "'"));
      return nullptr;
    }
    const Json& j = object_.at(name);
    // nlohmann stores non-negative integers as unsigned; both are integers here.
    const bool matches =
        type == Json::value_t::number_integer ? j.is_number_integer() : j.type() == type;
    if (!matches) {
      Fail(absl::StrCat("field '", name, "' must be ", what, ", not ", j.dump()));
      return nullptr;
    }
    if (type == Json::value_t::number_integer && j.is_number_unsigned() &&
        j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      Fail(absl::StrCat("field '", name, "' is out of range"));
      return nullptr;
    }
    return &j;
  }

  const Json& object_;
  absl::Status status_;
};

constexpr std::initializer_list<std::pair<const char*, Outcome>> kOutcomes = {
    {"ok", Outcome::kOk}, {"failed", Outcome::kFailed}, {"unknown", Outcome::kUnknown}};

absl::Status ParseRegister(const Json& j, RegisterOp* op) {
  Fields f(j);
  op->kind = f.Enum<RegisterOp::Kind>("kind", {{"put", RegisterOp::Kind::kPut},
                                               {"get", RegisterOp::Kind::kGet},
                                               {"cas", RegisterOp::Kind::kCas}});
  op->key = f.String("key");
  op->value = f.String("value");
  op->expected = f.StringOrNull("expected");
  op->found = f.Bool("found");
  op->swapped = f.Bool("swapped");
  op->outcome = f.Enum<Outcome>("outcome", kOutcomes);
  op->invoke_ns = f.Int("invoke_ns");
  op->complete_ns = f.TimeOrNever("complete_ns");
  op->client = f.Uint32("client");
  return f.status();
}

absl::Status ParseBank(const Json& j, BankOp* op) {
  Fields f(j);
  op->kind = f.Enum<BankOp::Kind>(
      "kind", {{"transfer", BankOp::Kind::kTransfer}, {"read", BankOp::Kind::kRead}});
  op->from = f.String("from");
  op->to = f.String("to");
  op->amount = f.Int("amount");
  op->applied = f.Bool("applied");
  for (const auto& [account, balance] : f.Object("balances").items()) {
    if (!balance.is_number_integer()) {
      f.Fail(absl::StrCat("balance of '", account, "' must be an integer"));
      break;
    }
    op->balances[account] = balance.get<int64_t>();
  }
  op->outcome = f.Enum<Outcome>("outcome", kOutcomes);
  op->invoke_ns = f.Int("invoke_ns");
  op->complete_ns = f.TimeOrNever("complete_ns");
  op->client = f.Uint32("client");
  return f.status();
}

absl::Status ParseWatch(const Json& j, WatchRecord* record) {
  Fields f(j);
  record->watcher = f.Uint32("watcher");
  record->prefix = f.String("prefix");
  record->start_revision = f.Int("start_revision");
  const Json& events = f.Array("events");
  for (size_t i = 0; i < events.size(); ++i) {
    Fields e(events[i]);
    WatchRecord::Event event;
    event.key = e.String("key");
    event.value = e.String("value");
    event.deleted = e.Bool("deleted");
    event.mod_revision = e.Int("mod_revision");
    if (!e.status().ok()) {
      f.Fail(absl::StrCat("event ", i, ": ", e.status().message()));
      break;
    }
    record->events.push_back(std::move(event));
  }
  record->progress_revision = f.Int("progress_revision");
  return f.status();
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::InternalError(absl::StrCat("error reading ", path.string()));
  return text;
}

// Parses every non-blank line of `dir/name` with `parse`.
template <typename T>
absl::StatusOr<std::vector<T>> ReadLines(const std::filesystem::path& dir, const char* name,
                                         absl::Status (*parse)(const Json&, T*)) {
  STEAD_ASSIGN_OR_RETURN(const std::string text, ReadFile(dir / name));
  std::vector<T> items;
  size_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    absl::Status status = j.is_discarded() ? absl::InvalidArgumentError("not valid JSON")
                                           : parse(j, &items.emplace_back());
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat((dir / name).string(), ":", line_number, ": ", status.message()));
    }
  }
  return items;
}

}  // namespace

absl::Status WriteHistory(const History& history, const std::filesystem::path& dir) {
  std::string registers, bank, watches, initial;
  try {
    registers = Lines(history.registers);
    bank = Lines(history.bank);
    watches = Lines(history.watches);
    initial = Json(history.bank_initial).dump() + "\n";
  } catch (const Json::exception& e) {
    // Only a string that is not valid UTF-8 makes dump() throw.
    return absl::InvalidArgumentError(
        absl::StrCat("history cannot be written as JSON: ", e.what()));
  }
  STEAD_RETURN_IF_ERROR(WriteFile(dir / kRegisters, registers));
  STEAD_RETURN_IF_ERROR(WriteFile(dir / kBank, bank));
  STEAD_RETURN_IF_ERROR(WriteFile(dir / kWatches, watches));
  return WriteFile(dir / kBankInitial, initial);
}

absl::StatusOr<History> ReadHistory(const std::filesystem::path& dir) {
  History history;
  STEAD_ASSIGN_OR_RETURN(history.registers, ReadLines<RegisterOp>(dir, kRegisters, ParseRegister));
  STEAD_ASSIGN_OR_RETURN(history.bank, ReadLines<BankOp>(dir, kBank, ParseBank));
  STEAD_ASSIGN_OR_RETURN(history.watches, ReadLines<WatchRecord>(dir, kWatches, ParseWatch));
  STEAD_ASSIGN_OR_RETURN(const std::string text, ReadFile(dir / kBankInitial));
  const std::string where = (dir / kBankInitial).string();
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  }
  for (const auto& [account, balance] : j.items()) {
    if (!balance.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": balance of '", account, "' must be an integer"));
    }
    history.bank_initial[account] = balance.get<int64_t>();
  }
  return history;
}

}  // namespace stead::fault
