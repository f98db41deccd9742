"""Input and output Structs of each transaction code, one module per code, field
names as the national platform's. The engine and the client SDK share them, and the
OpenAPI document is generated from them."""
