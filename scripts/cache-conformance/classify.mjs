// Classifies the suite's results with the suite's own `determineTestResult` (lib/display.mjs),
// prints the counts by kind, the required tests that did not pass, and writes a JSON summary.
//
// node classify.mjs PACKAGE_DIR RESULTS.json SUMMARY.json
import fs from 'node:fs'
import { pathToFileURL } from 'node:url'

const [pkg, resultsFile, summaryFile] = process.argv.slice(2)
const load = (path) => import(pathToFileURL(`${pkg}/${path}`).href)
const tests = (await load('tests/index.mjs')).default
// The CLI runs the Surrogate-Control suite too: count what it counts.
tests.push((await load('tests/surrogate-control.mjs')).default)
const display = await load('lib/display.mjs')
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const names = {
  '✅': 'passed',
  '⛔️': 'failed',
  '⚠️': 'failed',
  Y: 'yes',
  N: 'no',
  '🔹': 'setup-failed',
  '⁉️': 'harness-failed',
  '⚪️': 'dependency-failed',
  '↻': 'retry',
  '-': 'untested'
}
const counts = {}
const notPassed = []
for (const suite of tests) {
  for (const test of suite.tests) {
    const kind = test.kind || 'required'
    const outcome = names[display.determineTestResult(tests, test.id, results)[2]] || 'unknown'
    counts[kind] = counts[kind] || {}
    counts[kind][outcome] = (counts[kind][outcome] || 0) + 1
    if (kind === 'required' && outcome !== 'passed') {
      const detail = Array.isArray(results[test.id]) ? results[test.id][1] : ''
      notPassed.push({ id: test.id, outcome, detail: String(detail || '') })
    }
  }
}
for (const [kind, byOutcome] of Object.entries(counts)) {
  const total = Object.values(byOutcome).reduce((a, b) => a + b, 0)
  const parts = Object.entries(byOutcome).map(([outcome, n]) => `${outcome} ${n}`).join(', ')
  console.log(`${kind} (${total}): ${parts}`)
}
for (const test of notPassed) {
  console.log(`  ${test.outcome}: ${test.id} ${test.detail}`)
}
fs.writeFileSync(summaryFile, JSON.stringify({ counts, notPassed }, null, 2))
