"""Response stage: playbooks that turn incidents into tickets and notifications."""
