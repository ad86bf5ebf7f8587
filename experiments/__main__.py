"""`python -m experiments`: every study with the claims it tests."""

import importlib
import sys

from experiments import STUDIES


def main() -> int:
    for name in STUDIES:
        study = importlib.import_module(f"experiments.{name}").STUDY
        print(f"{name}: {study.description}")
        for claim in study.claims:
            print(f"  - {claim.text}")
        print(f"  python -m experiments.{name} --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
