#include "trace/trace-system_spp.h"
