// What the Speak button sends with a click: each control's synced state as the page holds it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { pageState } from "../src/speak_button.js";

const fakeModel = (controls, models) => ({
  get: (name) => (name === "controls" ? controls : undefined),
  widget_manager: {
    get_model: async (id) => {
      if (!(id in models)) throw new Error(`no model ${id}`);
      return { get: (name) => models[id][name] };
    },
  },
});

test("a click carries each control's index or value, skipping what the page lacks", async () => {
  const model = fakeModel(["voice2", "speed", "gone"], {
    voice2: { index: 0, options: ["(none)", "af_heart"] },
    speed: { value: 1.25 },
  });
  assert.deepEqual(await pageState(model), { voice2: { index: 0 }, speed: { value: 1.25 } });
});

test("a button with no controls sends an empty state", async () => {
  assert.deepEqual(await pageState(fakeModel([], {})), {});
});
