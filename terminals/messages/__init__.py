"""Input and output Structs of each transaction code, field names as the national
platform's. The engine and the client SDK share them, and the OpenAPI document is
generated from them (its description of a code is its module's docstring).

One module per code, named by what it does and laid out as engine.txn, so the 2207
messages are in `outpatient/settle.py` beside `engine/txn/outpatient/settle.py`:
`session/` sign_in (9001), sign_out (9002); `card/` challenge (9301), person_info
(1101); `outpatient/` register (2201), unregister (2202), visit (2203), fees (2204),
fees_cancel (2205), presettle (2206), settle (2207), cancel (2208); `reversal` (2601).
Each module holds its `INFNO` and `NAME`, and its docstring opens with the code and its
name. Beside them: `base` (the In/Out bases) and `setl` (the settlement answer of 2206,
2207 and 2208). Importers alias a message module `<module>_msg`
(`from terminals.messages.outpatient import settle as settle_msg`), which keeps it apart
from the engine.txn module of the same name."""
