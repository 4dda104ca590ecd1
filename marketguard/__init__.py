"""MarketGuard: observability and security operations for online marketplaces.

The core package holds what every stage shares: configuration (:mod:`marketguard.config`),
constrained types (:mod:`marketguard.types`), the event schema (:mod:`marketguard.schema`),
errors (:mod:`marketguard.errors`) and the storage backends (:mod:`marketguard.store`).
:mod:`marketguard.app` is the composition root that wires the stages together.
"""

__version__ = "0.1.0"
