// Which backends a session tries, in order of preference, for a Context's `backend` setting.
#pragma once

#include <string>
#include <vector>

#include "backends/backend.h"

namespace tandem {

// "ref" gives the reference backend alone; "auto" and "cpu" give the CPU backend, then the
// reference backend (for the nodes the CPU backend has no kernel for or declines).
std::vector<const Backend*> backends_for(const std::string& setting);

}  // namespace tandem
