"""The one exception users should see: a problem with their input, told in one line."""


class SpecError(ValueError):
    """Bad input (spec file, CLI option, data path). The CLI prints it as one line and exits with code 2."""
