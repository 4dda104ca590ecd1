"""Response stage: playbooks that turn incidents into tickets, notifications, contained threats.

* :mod:`playbooks.model` — playbook files (trigger + ordered steps), loaded strictly.
* :mod:`playbooks.runner` — :class:`~playbooks.runner.PlaybookRunner`: idempotent runs, retries.
* :mod:`playbooks.steps` — step kinds (registry); :mod:`playbooks.notifiers` — notifiers (registry).
* :mod:`playbooks.containment` — approval-gated actions; :mod:`playbooks.gdpr` — Art. 33 clock.
* :mod:`playbooks.state` / :mod:`playbooks.state_duckdb` — what is kept between runs.
"""
