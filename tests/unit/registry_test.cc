// The op registries agree with each other: every op Tandem has a schema for runs on the reference
// backend (the oracle), and every fast kernel belongs to an op with a schema (else it could never
// be chosen: a node without a schema is refused before kernels are looked at).
#include <gtest/gtest.h>

#include <string>
#include <vector>

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

}  // namespace
}  // namespace tandem
