# medicalrestore_read_manifest(<manifest> <kind> <output variable>)
#
# The paths of one kind ("module-script", "module-resource", "library-script", "library-resource")
# listed in install_manifest.txt, the one list of installed files that layout_install_tree.py
# reads as well. Usable from a CMakeLists.txt and in `cmake -P` mode.
function(medicalrestore_read_manifest manifest kind output_variable)
  file(STRINGS "${manifest}" lines REGEX "^${kind} ")
  set(paths)
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^${kind} +" "" path "${line}")
    string(STRIP "${path}" path)
    list(APPEND paths "${path}")
  endforeach()
  set(${output_variable} ${paths} PARENT_SCOPE)
endfunction()
