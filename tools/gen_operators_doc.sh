#!/usr/bin/env bash
# Regenerates docs/operators.md, the table of supported operators (op type, domain, opsets,
# backends with a kernel), from the built binary: run it after adding an op or a backend.
#   bash tools/gen_operators_doc.sh             uses build/bin/tandem
#   TANDEM=build-x/bin/tandem bash tools/gen_operators_doc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tandem="${TANDEM:-build/bin/tandem}"
if [[ ! -x "$tandem" ]]; then
  echo "error: $tandem not found; build first (bash tools/build.sh)" >&2
  exit 1
fi
mkdir -p docs
"$tandem" info --ops --markdown > docs/operators.md.tmp
mv docs/operators.md.tmp docs/operators.md
echo "wrote docs/operators.md ($(($(grep -c '^| ' docs/operators.md) - 1)) operators)"
