// A file of the ops layer that includes only its own layer and those below: the include check
// accepts it (check_layering.sh). Never compiled.
#pragma once

#include "core/error.h"
#include "ir/ir.h"
#include "ops/schema.h"
#include "shape_utils.h"
#include <vector>
