"""The Studio's Speak button: a click that carries what the page's controls hold.

Why not ``ipywidgets.Button``: a widget model sends its next state change only once the kernel
has answered the previous one (ipywidgets holds it until then), while a button's click is a
custom message sent at once. A voice picked just before Speak on a busy kernel then reaches the
kernel after the click, and the utterance starts with the old voice. This button's front end
(``extension/src/speak_button.js``) sends, with the click, the synced value of every control it
was given, as the page holds it; :meth:`SpeakButton.click` sets those values on the controls
before the click handlers run. Where the front end is not built, the panel uses a plain button.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anywidget
import ipywidgets as widgets
import traitlets

from ..player import attach_frontend

# The state a control's front end keeps in sync: selection widgets sync their index, the others
# their value.
SYNCED = ("index", "value")


class SpeakButton(anywidget.AnyWidget):
    """A button whose click carries the page's values of ``controls`` (see the module)."""

    description = traitlets.Unicode("Speak").tag(sync=True)
    tooltip = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    controls = traitlets.List(traitlets.Unicode()).tag(sync=True)  # their model ids

    def __init__(self, controls: list[widgets.Widget], **kwargs) -> None:
        attach_frontend(SpeakButton, "speak_button.js")
        super().__init__(controls=[c.model_id for c in controls], **kwargs)
        self._controls = {c.model_id: c for c in controls}
        self._handlers: list[Callable[[SpeakButton], None]] = []
        self.on_msg(self._on_page_message)

    def on_click(self, handler: Callable[[SpeakButton], None]) -> None:
        """Call ``handler(button)`` on every click, after the page's values are applied."""
        self._handlers.append(handler)

    def click(self, page_state: dict | None = None) -> None:
        """Apply ``page_state`` (model id → synced values) to the controls, then run the click
        handlers, as a click in the page does."""
        apply_page_state(self._controls, page_state or {})
        for handler in self._handlers:
            handler(self)

    def _on_page_message(self, _widget, content: dict, _buffers) -> None:
        if isinstance(content, dict) and content.get("event") == "click":
            state = content.get("state")
            self.click(state if isinstance(state, dict) else None)


def apply_page_state(controls: dict[str, widgets.Widget], page_state: dict) -> None:
    """Set each control's synced ``index`` or ``value`` to what the page sent, where it differs
    (the page's change may still be on its way: it then changes nothing when it comes). A value
    the control rejects is left to the page's own change message, which reports it as usual."""
    for model_id, values in page_state.items():
        control = controls.get(model_id)
        if control is None or not isinstance(values, dict):
            continue
        for name in SYNCED:
            if name in values and control.has_trait(name) \
                    and getattr(control, name) != values[name]:
                with contextlib.suppress(traitlets.TraitError, ValueError, TypeError):
                    setattr(control, name, values[name])
