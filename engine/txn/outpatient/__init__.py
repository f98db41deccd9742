"""The outpatient flow (DOMAIN.md §2.5), one module per transaction code: register
(2201), unregister (2202), visit (2203), fees (2204), fees_cancel (2205), presettle
(2206), settle (2207), cancel (2208)."""
