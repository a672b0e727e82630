"""The one exception users should see: a problem with their input, told in one line."""


class SpecError(ValueError):
    """Bad input (spec file, CLI option, data path). The CLI prints it as one line and exits with code 2."""


class BatchlabWarning(UserWarning):
    """A set-up that runs but may not mean what its author thinks (the CLI reports each once per study)."""
