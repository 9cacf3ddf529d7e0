/* libgreet: a tiny shared library living in its own store path (test fixture). */
#ifndef GREET_H
#define GREET_H
const char* greet_message(void);
double greet_root(double x);
#endif
