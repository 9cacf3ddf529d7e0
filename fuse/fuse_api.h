// The libfuse version this project is written against (low-level API, 3.12+ loop config).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
