/* exe.c - the executable's entry point. */
#include "plugin.h"

int main(int argc, char **argv) { return plugin_main(argc, argv); }
