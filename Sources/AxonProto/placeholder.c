// Placeholder until protoc-c output lands (scripts/gen-proto).
#include "axon_placeholder.h"
int axon_proto_placeholder(void) { return 0; }
