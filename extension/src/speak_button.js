// The Studio's Speak button (kokoro_lab/notebook/studio/speak_button.py): a click that carries
// what the page's controls hold at that moment.
//
// Why: ipywidgets sends a control's next change only once the kernel has answered its previous
// one, but a button's click at once. A voice picked just before Speak could reach the kernel
// after the click; the values sent with the click cannot.

/** The synced `index` (pickers) or `value` (sliders, text) of each control, by model id. */
export async function pageState(model) {
  const state = {};
  for (const id of model.get("controls") || []) {
    let control;
    try {
      control = await model.widget_manager.get_model(id);
    } catch {
      continue; // a control this page does not hold: the kernel's value stands
    }
    const values = {};
    for (const name of ["index", "value"]) {
      const value = control.get(name);
      if (value !== undefined) values[name] = value;
    }
    state[id] = values;
  }
  return state;
}

function render({ model, el }) {
  const button = document.createElement("button");
  button.className = "jupyter-widgets jupyter-button widget-button mod-success";
  const icon = document.createElement("i");
  icon.className = "fa fa-play";
  const label = document.createElement("span");
  button.append(icon, label);
  const sync = () => {
    label.textContent = ` ${model.get("description")}`;
    button.title = model.get("tooltip");
    button.disabled = model.get("disabled");
  };
  sync();
  model.on("change:description change:tooltip change:disabled", sync);
  button.addEventListener("click", async () => {
    model.send({ event: "click", state: await pageState(model) });
  });
  el.append(button);
  return () => model.off("change:description change:tooltip change:disabled", sync);
}

export default { render };
