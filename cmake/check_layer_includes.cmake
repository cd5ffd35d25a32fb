# Fails when a file of a layer includes a header of a layer it may not use (one above it, or a
# sibling it does not link). Run by the build before each layer is compiled (see
# src/CMakeLists.txt), so a wrong-way include fails the build with a message naming the file,
# the line and the rule, not some later link error or nothing at all.
#
#   cmake -DLAYER=ops -DMAY_INCLUDE="core;ir;ops" -DFILES="a.cc;b.h" -DSTAMP=out -P this-file
#
# Every quoted include is mapped to a layer by the table below (the longest matching prefix
# wins); an include without a folder is the including file's own folder. An include that matches
# no entry is an error too, so the table stays complete when a folder is added.
cmake_minimum_required(VERSION 3.25)
set(TANDEM_INCLUDE_LAYERS
  "core/=core"
  "tandem/tensor.h=core"
  "tandem/status.h=core"
  "tandem/context.h=core"
  "ir/=ir"
  "onnx/=onnx"
  "format/=format"
  "ops/=ops"
  "backends/backend.h=backend"
  "backends/ref/=backend_ref"
  "backends/cpu/=backend_cpu"
  "optimizer/=optimizer"
  "runtime/=runtime"
  "tandem/model.h=runtime"
  "parallel/=parallel"
  "tandem/parallel.h=parallel"
  "distributed/=distributed"
  "tandem/mpi.h=distributed"
  "server/=server"
  "cli/=cli")

set(errors "")
foreach(file IN LISTS FILES)
  file(STRINGS "${file}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*$" "\\1" header "${line}")
    if(NOT header MATCHES "/")
      continue()  # the file's own folder
    endif()
    set(best_len 0)
    set(layer "")
    foreach(entry IN LISTS TANDEM_INCLUDE_LAYERS)
      string(REPLACE "=" ";" pair "${entry}")
      list(GET pair 0 prefix)
      list(GET pair 1 owner)
      string(LENGTH "${prefix}" len)
      string(SUBSTRING "${header}" 0 ${len} head)
      if(head STREQUAL prefix AND len GREATER best_len)
        set(best_len ${len})
        set(layer ${owner})
      endif()
    endforeach()
    if(layer STREQUAL "")
      string(APPEND errors "\n  ${file}: #include \"${header}\" belongs to no layer "
        "(add its folder to cmake/check_layer_includes.cmake)")
    elseif(NOT layer IN_LIST MAY_INCLUDE)
      string(APPEND errors "\n  ${file}: #include \"${header}\" is layer '${layer}', which "
        "layer '${LAYER}' may not use (it may use: ${MAY_INCLUDE})")
    endif()
  endforeach()
endforeach()

if(NOT errors STREQUAL "")
  message(FATAL_ERROR "wrong-way includes in layer '${LAYER}':${errors}\n"
    "Layers, from the bottom: core, ir, onnx, ops, backend, backend_ref, backend_cpu, optimizer, "
    "runtime, parallel, server, cli (README.md, Layout).")
endif()
file(WRITE "${STAMP}" "ok\n")
