// Identity module: hotkeys (ed25519 via libsodium), SS58 addresses, request signatures, metagraph, admission.
// Nothing here touches sockets or the wire format; the server maps `AdmissionDecision` to return codes.
