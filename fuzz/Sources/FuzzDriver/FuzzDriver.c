// Header-only module; this file exists because SwiftPM needs a source file per C target.
#include "FuzzDriver.h"
