"""Code every paper package may use: errors, the safe image reader, bundled-weight I/O, header-only
parameter counts, the figures format and the contract types. Nothing here imports gradio or
`studio`, and nothing here knows about a particular paper."""
