// Open the pack's workflows in a running ComfyUI's real graph editor (headless Chromium via playwright-core) the way
// a user does, and print a JSON report: alerts, node boxes that overlap, HTML widgets outside their node, where the
// graph sits against the sidebar / top bars, and what the Templates browser shows (titles, thumbnails) and opens.
//
//   NODE_PATH=<folder with node_modules/playwright-core> node tools/editor_check.js URL OUTDIR UI_FILE...
//
// Each UI file is dropped like a file from the desktop, then its media previews are made to grow as far as they do
// in use: Load Video switched to a portrait clip named by $PORTRAIT_VIDEO (if set, it must be in ComfyUI's input
// folder) and every Save Video given the 'executed' message of a finished run showing $PORTRAIT_OUTPUT (in output/).
// Screenshots go to OUTDIR. Used by tests/test_comfyui_integration.py (COMFYUI_DIR set); also runnable by hand.
// Each node's widget names and values as loaded are reported too (widgets), to compare with the file.
// Node types the editor reports missing (its "missing nodes" dialog: a workflow that uses another pack's nodes,
// not installed) are listed per workflow as missingNodes; the dialog is closed before the next workflow.
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const [url, outdir, ...files] = process.argv.slice(2);
const BROWSER = process.env.CHROMIUM || '/usr/bin/chromium';

function measure() {  // runs in the page
  const app = window.app, ds = app.canvas.ds;
  const toScreen = (x, y) => [(x + ds.offset[0]) * ds.scale, (y + ds.offset[1]) * ds.scale];
  const side = document.querySelector('.side-tool-bar-container');
  const boxes = app.graph._nodes.map(n => ({ name: `${n.type}#${n.id}`, b: Array.from(n.getBounding()) }));
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i].b, b = boxes[j].b;
    if (a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3])
      overlaps.push([boxes[i].name, boxes[j].name]);
  }
  const domOutside = [];
  for (const n of app.graph._nodes) for (const w of n.widgets || []) {
    if (!w.element || !w.element.isConnected) continue;
    const r = w.element.getBoundingClientRect();
    if (!r.width) continue;
    const [x0, y0] = toScreen(n.pos[0], n.pos[1]), [x1, y1] = toScreen(n.pos[0] + n.size[0], n.pos[1] + n.size[1]);
    if (r.left < x0 - 1 || r.right > x1 + 1 || r.top < y0 - 1 || r.bottom > y1 + 1) domOutside.push(`${n.type}#${n.id}.${w.name}`);
  }
  return {
    id: app.graph.id, scale: ds.scale, sidebarRight: side ? side.getBoundingClientRect().right : null,
    left: Math.min(...boxes.map(x => toScreen(x.b[0], x.b[1])[0])), top: Math.min(...boxes.map(x => toScreen(x.b[0], x.b[1])[1])),
    overlaps, domOutside, toasts: [...document.querySelectorAll('.p-toast-message')].map(e => e.innerText),
    sizes: app.graph._nodes.map(n => [`${n.type}#${n.id}`, ...Array.from(n.size).map(Math.round)]),
    // the dialog's list, and (newer frontends no longer call that dialog for every load) the graph's nodes whose
    // type the server does not define (virtual editor nodes such as notes and reroutes aside)
    missingNodes: [...new Set([...(window.__missingNodes || []), ...app.graph._nodes
      .filter(n => window.__knownTypes && !window.__knownTypes.has(n.type) && !n.isVirtualNode).map(n => n.type)])].sort(),
    // each node's widgets as loaded, in the editor's order: a saved workflow's widgets_values are positional, so a
    // file out of step with a node's real widgets shows here (a value in the wrong widget, NaN in a number)
    widgets: Object.fromEntries(app.graph._nodes.map(n => [String(n.id), (n.widgets || []).map(w => [w.name,
      typeof w.value === 'number' && Number.isNaN(w.value) ? 'NaN'
        : ['number', 'string', 'boolean'].includes(typeof w.value) ? w.value : null])])),
  };
}

async function recordMissingNodes() {  // runs in the page: the editor's missing-nodes dialog, by the types it lists
  const app = window.app;
  window.__missingNodes = [];
  if (typeof app.showMissingNodesError === 'function') {
    const show = app.showMissingNodesError.bind(app);
    app.showMissingNodesError = (types) => {
      window.__missingNodes.push(...types.map(t => (typeof t === 'string' ? t : t.type)));
      return show(types);
    };
  }
  const info = await (await fetch('/api/object_info')).json();
  window.__knownTypes = new Set(Object.keys(info));
}

(async () => {
  const browser = await chromium.launch({ executablePath: BROWSER, headless: true, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const alerts = [];
  page.on('dialog', async d => { alerts.push(d.message()); await d.dismiss(); });
  // a fresh user gets the Templates browser on first start; mark that first start done so it cannot cover the graph
  await page.request.post(`${url.replace(/\/$/, '')}/api/settings/Comfy.TutorialCompleted`, { data: 'true',
    headers: { 'Content-Type': 'application/json' } }).catch(() => {});
  await page.goto(url);
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas, null, { timeout: 120000 });
  await page.waitForTimeout(1500);
  await page.keyboard.press('Escape');  // a fresh user gets the Templates browser on first start
  await page.waitForTimeout(500);
  await page.evaluate(recordMissingNodes);
  const forgetMissingNodes = () => page.evaluate(() => { window.__missingNodes = []; });
  const closeToasts = () => page.evaluate(() => document.querySelectorAll('.p-toast-message .p-toast-close-button').forEach(b => b.click()));
  // the Templates browser a fresh user gets on first start may open after the Escape above: close any dialog
  // before each drop so the screenshots show the graph
  const closeDialogs = async () => {
    await page.keyboard.press('Escape');
    await page.evaluate(() => document.querySelectorAll('.p-dialog .p-dialog-close-button, .p-dialog button[aria-label="Close"]').forEach(b => b.click()));
    await page.waitForTimeout(300);
  };
  const report = { dropped: {}, templates: {} };
  for (const f of files) {
    const name = path.basename(f, '.json');
    const first = alerts.length;
    await closeDialogs();
    await closeToasts();
    await forgetMissingNodes();
    await page.evaluate(async ([text, fname]) => {
      await window.app.handleFile(new File([text], fname, { type: 'application/json' }));
    }, [fs.readFileSync(f, 'utf8'), path.basename(f)]);
    await page.waitForTimeout(4000);
    const loaded = await page.evaluate(measure);
    await page.screenshot({ path: path.join(outdir, `dropped_${name}.png`) });
    await page.evaluate(async ([portrait, output]) => {
      const app = window.app, api = window.comfyAPI.api.api;
      for (const n of app.graph._nodes) {
        if (n.type === 'SaveVideo' && output)
          api.dispatchCustomEvent('executed', { node: String(n.id), display_node: String(n.id), prompt_id: 'check',
            output: { images: [{ filename: path_base(output), subfolder: path_dir(output), type: 'output' }], animated: [true] } });
        if (n.type === 'LoadVideo' && portrait) {
          const w = n.widgets.find(w => w.name === 'file'); w.value = portrait; w.callback?.(w.value);
        }
      }
      function path_base(p) { return p.split('/').pop(); }
      function path_dir(p) { return p.split('/').slice(0, -1).join('/'); }
      await new Promise(r => setTimeout(r, 4000));
      app.graph.setDirtyCanvas(true, true);
    }, [process.env.PORTRAIT_VIDEO || '', process.env.PORTRAIT_OUTPUT || '']);
    await page.waitForTimeout(1000);
    const grown = await page.evaluate(measure);
    await page.screenshot({ path: path.join(outdir, `dropped_${name}_grown.png`) });
    report.dropped[name] = { alerts: alerts.slice(first), loaded, grown };
  }
  // With ComfyUI's own templates installed (comfyui-workflow-templates, a requirement of ComfyUI) the browser opens
  // on "All Templates"; a pack's templates are a category of their own, named by the pack's folder ($PACK_NAME).
  const pack = process.env.PACK_NAME || 'musetalk-nodes';
  const openBrowser = async () => {
    await page.evaluate(() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates'));
    await page.waitForTimeout(2500);
    const entry = page.locator('[role=dialog]').getByText(pack, { exact: true }).first();
    if (await entry.count() > 0) { await entry.click(); await page.waitForTimeout(1500); }
  };
  await openBrowser();
  // the browser renders a card's thumbnail only once the card is in view (two rows fit the window): bring each
  // template's card into view in turn and collect every thumbnail seen, by its card's title
  const titles = (process.env.TEMPLATE_TITLES || '').split('\n').filter(Boolean);
  const collectCards = () => page.evaluate((titles) => {
    window.__cards = window.__cards || {};
    document.querySelectorAll('[role=dialog] img').forEach(i => {
      // thumbnails are blob: addresses (new ones when a card renders again): the card's own title names them,
      // found on the nearest ancestor whose text lines hold exactly one of our titles
      let title = null;
      for (let e = i.parentElement; e && !title; e = e.parentElement) {
        const lines = (e.innerText || '').split('\n').map(l => l.trim());
        const found = titles.filter(t => lines.includes(t));
        if (found.length > 1) break;
        if (found.length === 1) title = found[0];
      }
      if (title) window.__cards[title] = {
        loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth, height: i.naturalHeight };
    });
    return Object.values(window.__cards);
  }, titles);
  await collectCards();
  for (const title of titles) {
    const card = page.locator('[role=dialog]').getByText(title, { exact: true }).first();
    if (await card.count() > 0) { await card.scrollIntoViewIfNeeded(); await page.waitForTimeout(800); }
    await collectCards();
  }
  report.cards = await collectCards();
  report.dialogText = await page.evaluate(() => document.querySelector('[role=dialog]')?.innerText ?? '');
  await page.screenshot({ path: path.join(outdir, 'templates_browser.png') });
  let i = 0;
  for (const title of titles) {
    if (i++) { await closeDialogs(); await openBrowser(); }  // the last template may have left a dialog open
    await closeToasts();
    await forgetMissingNodes();
    const first = alerts.length;
    const card = page.locator('[role=dialog]').getByText(title, { exact: true }).first();
    const found = await card.count() > 0;
    if (found) { await card.click(); await page.waitForTimeout(4500); }
    report.templates[title] = { found, alerts: alerts.slice(first), ...(await page.evaluate(measure)) };
    await page.screenshot({ path: path.join(outdir, `template_${i}.png`) });
  }
  process.stdout.write(JSON.stringify(report));
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
