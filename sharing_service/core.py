"""The sharing service's rules, independent of HTTP and MQTT, one role per class.

:class:`SharingCore` only assembles the roles around one :class:`ServiceContext`
(one database, settings, presigner, clock, outbox):

* :class:`~sharing_service.registry.Registry`: the operator (owners, devices, agencies, audit check);
* :class:`~sharing_service.agencies.AgencyDesk`: the agency API (rule 3, status, links);
* :class:`~sharing_service.delivery.Delivery`: matching a request to owners and asking them;
* :class:`~sharing_service.transparency.TransparencyReport`: public monthly figures;
* :class:`~sharing_service.clip_index.ClipIndex`: clips announced by devices;
* :class:`~sharing_service.consent.Consent`: signed decisions and revokes;
* :class:`~sharing_service.owner_rpc.OwnerRpc`: the owner's queries (typed table);
* :class:`~sharing_service.shares.Shares`: share links (owner's signed create/revoke, the viewer's HTTP access);
* :class:`~sharing_service.sweeps.Sweeper`: expiry.

MQTT messages are returned as :class:`Outgoing` values and handed to the outbox
only after the database transaction has committed, so an owner is never told
about a state that was rolled back. Matching is scheduled through an injected
:class:`~sharing_service.delivery.Scheduler` (the service's matcher thread).
"""
from __future__ import annotations

from doorbell.core.config import SharingSection
from sharing_service.agencies import AgencyDesk
from sharing_service.clip_index import ClipIndex
from sharing_service.consent import Consent
from sharing_service.context import Outbox, ServiceContext
from sharing_service.db import Database
from sharing_service.delivery import Delivery, InlineScheduler, Scheduler
from sharing_service.owner_rpc import OwnerRpc
from sharing_service.registry import Registry
from sharing_service.shares import Shares
from sharing_service.storage import Presigner
from sharing_service.sweeps import Sweeper
from sharing_service.transparency import TransparencyReport


class SharingCore:
    def __init__(self, ctx: ServiceContext, *, delivery: Delivery | None = None,
                 scheduler: Scheduler | None = None):
        self.ctx = ctx
        self.registry = Registry(ctx)
        self.delivery = delivery or Delivery(ctx)
        self.agencies = AgencyDesk(ctx, scheduler or InlineScheduler(self.delivery))
        self.transparency = TransparencyReport(ctx)
        self.clips = ClipIndex(ctx)
        self.consent = Consent(ctx)
        self.rpc = OwnerRpc(ctx)
        self.shares = Shares(ctx, self.consent)
        self.sweeper = Sweeper(ctx)

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def settings(self) -> SharingSection:
        return self.ctx.settings

    @property
    def presigner(self) -> Presigner | None:
        return self.ctx.presigner

    @property
    def outbox(self) -> Outbox:
        return self.ctx.outbox

