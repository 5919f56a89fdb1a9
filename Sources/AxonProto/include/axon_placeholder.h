int axon_proto_placeholder(void);
