"""A realistic marketplace traffic scenario with injected attacks of known ground truth.

:func:`generate` interleaves normal traffic (buyers, sellers' integrations, search bots) with
attack campaigns. Each campaign is a :class:`Campaign` in :data:`CAMPAIGNS`; adding a new
kind of attack to the demo is adding one function there.
"""

from marketguard.app.scenario.campaigns import CAMPAIGNS, Campaign
from marketguard.app.scenario.generate import Scenario, generate, write_log

__all__ = ["CAMPAIGNS", "Campaign", "Scenario", "generate", "write_log"]
