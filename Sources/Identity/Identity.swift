// Identity module: hotkeys (ed25519 via libsodium), SS58 addresses, request signatures, metagraph, admission.
