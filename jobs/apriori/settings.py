"""Settings of this job (defaults and documentation in conf/)."""
from jobs.common.config import Section


class AprioriSettings(Section):
    pass
