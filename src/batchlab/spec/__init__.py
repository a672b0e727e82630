"""Study specs: what a study is (schema.py), how a spec is read (reading.py), and how its sweep
becomes runs (plan.py)."""

from batchlab.spec.plan import (
    RunSpec,
    StudyPlan,
    compact_component,
    config_id_of,
    flatten_config,
    plan_study,
    validate_study,
)
from batchlab.spec.reading import parse_override, read_document, recipe_names
from batchlab.spec.schema import Study

__all__ = ["RunSpec", "Study", "StudyPlan", "compact_component", "config_id_of", "flatten_config", "parse_override",
           "plan_study", "read_document", "recipe_names", "validate_study"]
