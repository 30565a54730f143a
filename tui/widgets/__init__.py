"""One widget per concern; each draws itself from a node snapshot and the session's
bounded histories (``show``), at the console's refresh rate, never per sample."""

from tui.widgets.audit import AuditTail
from tui.widgets.detector import DetectorPanel
from tui.widgets.device import DevicePanel
from tui.widgets.estop import EstopBanner
from tui.widgets.features import FeaturesPanel
from tui.widgets.status import StatusLine
from tui.widgets.stimulation import StimulationPanel
from tui.widgets.traces import TracesPanel

__all__ = [
    "AuditTail",
    "DetectorPanel",
    "DevicePanel",
    "EstopBanner",
    "FeaturesPanel",
    "StatusLine",
    "StimulationPanel",
    "TracesPanel",
]
