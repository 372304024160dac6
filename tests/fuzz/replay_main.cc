// Replays a fuzz target's checked-in corpus as an ordinary test (label fuzz-replay), so
// every input that once crashed a decoder stays fixed under g++ and the sanitizer
// presets. Also feeds a deterministic batch of mutated corpus inputs.
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::string> ReadCorpus() {
  std::vector<std::filesystem::path> paths;
  for (const auto& entry : std::filesystem::directory_iterator(STEAD_FUZZ_CORPUS_DIR)) {
    if (entry.is_regular_file()) paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());  // deterministic order
  std::vector<std::string> inputs;
  for (const auto& path : paths) {
    std::ifstream file(path, std::ios::binary);
    std::stringstream bytes;
    bytes << file.rdbuf();
    inputs.push_back(bytes.str());
  }
  return inputs;
}

void RunInput(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

TEST(FuzzReplay, CorpusInputsRunCleanly) {
  const std::vector<std::string> corpus = ReadCorpus();
  ASSERT_FALSE(corpus.empty()) << "no corpus in " << STEAD_FUZZ_CORPUS_DIR;
  for (const std::string& input : corpus) RunInput(input);
}

TEST(FuzzReplay, SeededMutationsOfTheCorpusRunCleanly) {
  const std::vector<std::string> corpus = ReadCorpus();
  ASSERT_FALSE(corpus.empty());
  std::mt19937_64 random(20261122);
  for (int round = 0; round < 5000; ++round) {
    std::string input = corpus[random() % corpus.size()];
    const int edits = 1 + static_cast<int>(random() % 8);
    for (int e = 0; e < edits; ++e) {
      switch (random() % 3) {
        case 0:  // flip a byte
          if (!input.empty()) input[random() % input.size()] ^= static_cast<char>(1 + random() % 255);
          break;
        case 1:  // truncate
          if (!input.empty()) input.resize(random() % input.size());
          break;
        default:  // insert a byte
          input.insert(input.begin() + static_cast<std::ptrdiff_t>(random() % (input.size() + 1)),
                       static_cast<char>(random()));
      }
    }
    RunInput(input);
  }
}

}  // namespace
