"""Curate: near-duplicates, people (identity clustering), label checks, identity-disjoint splits.

Run order: find_duplicates -> cluster_people -> assign_splits (each is idempotent and incremental).
"""

from .dedup import DedupReport, find_duplicates
from .labels import export_labels, import_labels, label_conflicts, label_noise
from .people import PeopleReport, cluster_people, people_listing
from .splits import SplitReport, assign_splits, dataset_faces, split_params

__all__ = [
    "DedupReport", "PeopleReport", "SplitReport", "assign_splits", "cluster_people", "dataset_faces",
    "export_labels", "find_duplicates", "import_labels", "label_conflicts", "label_noise", "people_listing",
    "split_params",
]
