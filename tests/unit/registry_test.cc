// The op registries agree with each other: every op Tandem has a schema for runs on the reference
// backend (the oracle), every fast kernel belongs to an op with a schema (else it could never
// be chosen: a node without a schema is refused before kernels are looked at), and every fast
// kernel is covered by a fast-versus-reference table test (tests/ops/fast_vs_ref.h).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "../ops/fast_vs_ref.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/ref/ref_backend.h"
#include "ops/schema.h"

namespace tandem {
namespace {

std::string name(const std::pair<std::string, std::string>& key) {
  return key.first.empty() ? key.second : key.first + "." + key.second;
}

TEST(Registry, EverySchemaHasAReferenceKernel) {
  std::vector<std::string> missing;
  for (const auto& key : schemas().keys())
    if (!reference_backend().kernels().find(key.first, key.second)) missing.push_back(name(key));
  EXPECT_TRUE(missing.empty()) << "schemas without a reference kernel: "
                               << ::testing::PrintToString(missing);
  EXPECT_GT(schemas().keys().size(), 150u);  // the registry is really populated
}

TEST(Registry, EveryKernelHasASchema) {
  for (const Backend* b : {&reference_backend(), &cpu_backend()}) {
    std::vector<std::string> orphans;
    for (const auto& key : b->kernels().keys())
      if (!schemas().find(key.first, key.second)) orphans.push_back(name(key));
    EXPECT_TRUE(orphans.empty()) << b->name() << " kernels without a schema: "
                                 << ::testing::PrintToString(orphans);
    EXPECT_FALSE(b->kernels().keys().empty()) << b->name();
  }
}

// The tables declare what they cover (TANDEM_FAST_TABLE_TEST), and each table test fails unless
// every kernel it declares ran on the fast path and matched the reference; this test, which runs
// nothing, fails for a CPU kernel no table declares, and for a declaration that names no kernel.
TEST(Registry, EveryFastKernelHasATableTest) {
  std::set<std::string> declared;
  for (const testing::FastTable* table : testing::fast_tables()) {
    EXPECT_FALSE(table->covers().empty()) << table->name() << " declares no kernel";
    for (const std::string& key : table->covers()) {
      declared.insert(key);
      const size_t colon = key.rfind(':');
      const std::string domain = colon == std::string::npos ? "" : key.substr(0, colon);
      const std::string op = colon == std::string::npos ? key : key.substr(colon + 1);
      EXPECT_NE(cpu_backend().kernels().find(domain, op), nullptr)
          << table->name() << " declares " << key << ", which the CPU backend has no kernel for";
    }
  }
  std::vector<std::string> missing;
  for (const auto& [domain, op] : cpu_backend().kernels().keys()) {
    const std::string key = domain.empty() ? op : domain + ":" + op;
    if (!declared.count(key)) missing.push_back(key);
  }
  EXPECT_TRUE(missing.empty()) << "CPU kernels without a fast-versus-reference table test: "
                               << ::testing::PrintToString(missing);
  EXPECT_GT(declared.size(), 40u);  // the tables really registered
}

}  // namespace
}  // namespace tandem
