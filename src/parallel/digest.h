// A content fingerprint of the model file, so every worker — a restarted one too — provably runs
// the bytes the predictor was built from (defect: a replaced file made one batch mix two models).
#pragma once

#include <string>

namespace tandem::parallel {

// Reads `path` once and returns "<size>:<64-bit hash in hex>"; for a .tandem file, whose header
// states a checksum of the rest that every load verifies, "<size>:tandem:<that checksum>" from
// the header alone. Not cryptographic: it detects a file replaced or rewritten, not a collision
// crafted on purpose. Throws when unreadable.
std::string file_digest(const std::string& path);

}  // namespace tandem::parallel
