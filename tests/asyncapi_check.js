// Parse and validate AsyncAPI documents with the official parser (@asyncapi/parser), as AsyncAPI's
// own tools do: `node asyncapi_check.js <node_modules dir> <document>...`. Prints a JSON array with,
// per document, {"document": <parsed?>, "diagnostics": [{severity, code, message, path}, ...]};
// severity 0 is an error, 1 a warning, 2 information, 3 a hint. Relative $refs resolve against each
// document's folder.
'use strict';
const path = require('node:path');

async function main() {
  const [modules, ...documents] = process.argv.slice(2);
  const { Parser, fromFile } = require(path.join(path.resolve(modules), '@asyncapi', 'parser'));
  const parser = new Parser();
  const verdicts = [];
  for (const document of documents) {
    const { document: parsed, diagnostics } = await fromFile(parser, path.resolve(document)).parse();
    verdicts.push({
      document: parsed !== undefined,
      diagnostics: diagnostics.map((d) => ({
        severity: d.severity,
        code: String(d.code),
        message: d.message,
        path: d.path,
      })),
    });
  }
  process.stdout.write(JSON.stringify(verdicts) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(2);
});
