#!/usr/bin/env python
"""Write attrtools' own sentiment dataset into data/ (see attrtools/sentiment_data.py).

    python scripts/make_sentiment_data.py            # writes data/sentiment_{train,dev}.tsv
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from attrtools.sentiment_data import write_dataset  # noqa: E402

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
    paths = write_dataset(out)
    print("wrote", paths["train"], "and", paths["dev"])
