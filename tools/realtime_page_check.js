// Drive the real-time server's web page (musetalk_core/realtime/web) in headless Chromium the way a user does:
// pick the avatar, pick the transport, press "Start talking" with a fake microphone that plays a WAV file, and
// report (JSON on stdout) what the page's counters (window.musetalk) show for each transport.
//
//   NODE_PATH=<folder with node_modules/playwright-core> node tools/realtime_page_check.js URL AVATAR SPEECH.wav \
//       [MIN_FRAMES] [MODES: ws,webrtc]
//
// Used by tests/test_realtime_server.py (skipped where node, playwright-core or Chromium are missing).
const { chromium } = require('playwright-core');

const [url, avatar, wav, minFrames = '10', modes = 'ws,webrtc'] = process.argv.slice(2);
const BROWSER = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = Number(process.env.PAGE_TIMEOUT_MS || 120000);

async function run(page, mode) {
  await page.goto(url);
  await page.waitForFunction((name) => [...document.querySelectorAll('#avatar option')].some((o) => o.value === name),
                             avatar, { timeout: 20000 });
  const listed = await page.$$eval('#avatar option', (options) => options.map((o) => o.value));
  await page.selectOption('#avatar', avatar);
  await page.selectOption('#mode', mode);
  await page.click('#start');
  const started = Date.now();
  let reached = true;
  try {
    await page.waitForFunction((n) => window.musetalk.frames >= n || window.musetalk.lastError,
                               Number(minFrames), { timeout: TIMEOUT, polling: 100 });
  } catch (err) {
    reached = false;
  }
  const state = await page.evaluate(() => ({ ...window.musetalk, status: document.getElementById('status').textContent }));
  await page.click('#stop');
  return { mode, listed, reached, seconds: (Date.now() - started) / 1000, state };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: BROWSER, headless: true,
    args: ['--no-sandbox', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
           `--use-file-for-fake-audio-capture=${wav}`, '--autoplay-policy=no-user-gesture-required'],
  });
  const report = { errors: [] };
  try {
    const context = await browser.newContext({ permissions: ['microphone'] });
    const page = await context.newPage();
    page.on('pageerror', (err) => report.errors.push(String(err)));
    page.on('console', (msg) => { if (msg.type() === 'error') report.errors.push(msg.text()); });
    for (const mode of modes.split(',')) report[mode] = await run(page, mode);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report));
})().catch((err) => { console.error(err); process.exit(1); });
