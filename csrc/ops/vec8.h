/* the vector types moved to the kernel layer; this name stays for files that still include it */
#include "../kernels/vec8.h"
