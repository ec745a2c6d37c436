#!/usr/bin/env python
"""Write attrtools' own sentiment dataset into data/ (see attrtools/sentiment_data.py).

    python scripts/make_sentiment_data.py            # writes data/sentiment_{train,dev}.tsv
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from attrtools.sentiment_data import write_dataset  # noqa: E402

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"),
                        help="Folder the two TSV files are written to (default: the repository's data/).")
    paths = write_dataset(parser.parse_args().output_dir)
    print("wrote", paths["train"], "and", paths["dev"])
