// A file of the ops layer that includes the runtime (above it) and a folder no layer owns: the
// include check must refuse both (check_layering.sh). Never compiled.
#pragma once

#include "ops/schema.h"
#include "runtime/session.h"
#include "nowhere/thing.h"
