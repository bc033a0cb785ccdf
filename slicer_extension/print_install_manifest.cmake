# cmake -P slicer_extension/print_install_manifest.cmake
# Prints "<kind> <path>" for every file the extension's CMake installs, read exactly as
# MedicalRestore/CMakeLists.txt reads them; the packaging test compares it with layout_install_tree.py.
include(${CMAKE_CURRENT_LIST_DIR}/InstallManifest.cmake)
foreach(kind module-script module-resource library-script library-resource)
  medicalrestore_read_manifest(${CMAKE_CURRENT_LIST_DIR}/install_manifest.txt ${kind} paths)
  foreach(path IN LISTS paths)
    message(STATUS "${kind} ${path}")
  endforeach()
endforeach()
