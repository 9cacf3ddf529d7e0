/* libgreet: links libm from the glibc store path, so the library itself has a reference. */
#include "greet.h"
#include <math.h>
const char* greet_message(void) { return "greetings from libgreet"; }
double greet_root(double x) { return sqrt(x); }
