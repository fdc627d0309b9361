/// The browsable API reference at `/api/docs`: one self-contained page (no CDN, no third-party
/// code) whose script fetches `/api/v1/openapi.json` and renders every operation with its
/// parameters, request body and responses, resolving schema references.
enum APIDocsPage {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Meridian REST API</title>
    <style>
      body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
      header { background: #1d2330; color: #fff; padding: 1rem 2rem; }
      header h1 { margin: 0; font-size: 1.4rem; }
      main { max-width: 70rem; margin: 0 auto; padding: 1rem 2rem 4rem; }
      .intro { white-space: pre-wrap; }
      h2 { margin-top: 2rem; border-bottom: 1px solid #ccd; text-transform: capitalize; }
      details.op { background: #fff; border: 1px solid #d8dbe2; border-radius: 6px; margin: .5rem 0; }
      details.op > summary { cursor: pointer; padding: .5rem .8rem; list-style: none; display: flex; gap: .8rem; align-items: baseline; }
      .method { font: bold 12px monospace; padding: .15rem .5rem; border-radius: 4px; color: #fff; min-width: 4rem; text-align: center; }
      .get { background: #2f6fb0; } .post { background: #2e8b57; } .put { background: #a0701a; }
      .patch { background: #7a4fb0; } .delete { background: #b03a2e; }
      .path { font-family: monospace; font-weight: 600; }
      .role { margin-left: auto; font-size: 12px; color: #556; }
      .body { padding: 0 1rem 1rem; border-top: 1px solid #eee; }
      table { border-collapse: collapse; width: 100%; margin: .3rem 0; }
      td, th { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; }
      code, pre { font-family: ui-monospace, monospace; font-size: 13px; }
      pre { background: #f1f3f6; padding: .6rem; border-radius: 4px; overflow-x: auto; }
      .status { font-weight: bold; }
      #error { color: #b03a2e; }
    </style>
    </head>
    <body>
    <header><h1 id="title">Meridian REST API</h1></header>
    <main>
      <p id="error"></p>
      <p class="intro" id="intro"></p>
      <p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>
      <div id="ops"></div>
    </main>
    <script>
    "use strict";
    const el = (tag, attrs, ...children) => {
      const node = document.createElement(tag);
      for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
      for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      return node;
    };
    let doc = null;
    const resolve = (schema) => {
      if (schema && schema.$ref) return resolve(schema.$ref.split("/").slice(1).reduce((o, k) => o[k], doc));
      return schema;
    };
    // A readable, TypeScript-like rendering of a schema, references expanded (to a depth).
    const render = (schema, depth) => {
      if (schema === undefined || schema === null) return "any";
      if (schema.$ref) {
        const name = schema.$ref.split("/").pop();
        return depth > 3 ? name : render(resolve(schema), depth + 1);
      }
      if (schema.anyOf || schema.oneOf) return (schema.anyOf || schema.oneOf).map(s => render(s, depth)).join(" | ");
      if (schema.const !== undefined) return JSON.stringify(schema.const);
      if (schema.enum) return schema.enum.map(v => JSON.stringify(v)).join(" | ");
      const pad = "  ".repeat(depth + 1), end = "  ".repeat(depth);
      switch (schema.type) {
        case "object": {
          const props = schema.properties || {};
          const required = new Set(schema.required || []);
          const lines = Object.keys(props).map(key => {
            const note = props[key].description ? "  // " + props[key].description : "";
            return pad + key + (required.has(key) ? "" : "?") + ": " + render(props[key], depth + 1) + note;
          });
          if (schema.additionalProperties) lines.push(pad + "[key: string]: " + render(schema.additionalProperties, depth + 1));
          return lines.length ? "{\n" + lines.join("\n") + "\n" + end + "}" : "object";
        }
        case "array": return render(schema.items, depth) + "[]";
        case "integer": case "number": {
          const range = schema.minimum !== undefined ? ` (${schema.minimum}..${schema.maximum ?? ""})` : "";
          return schema.type + range;
        }
        case "string": return schema.format ? `string (${schema.format})` : "string";
        case "boolean": case "null": return schema.type;
        default: return "any";
      }
    };
    const section = (title, ...content) => el("div", {}, el("h4", {}, title), ...content);
    const operation = (method, path, op) => {
      const body = el("div", { class: "body" });
      if (op.description) body.append(el("p", {}, op.description));
      const role = op["x-minimum-role"];
      body.append(el("p", {}, role ? `Needs role ${role} or above${op["x-users-only"] ? " (logged-in users only)" : ""}.` : "No authentication."));
      if (op.parameters && op.parameters.length) {
        const table = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description")));
        for (const p of op.parameters) {
          table.append(el("tr", {}, el("td", {}, el("code", {}, p.name + (p.required ? "" : "?"))), el("td", {}, p.in),
            el("td", {}, el("code", {}, render(p.schema, 0))), el("td", {}, p.description || "")));
        }
        body.append(section("Parameters", table));
      }
      if (op.requestBody) {
        const parts = Object.entries(op.requestBody.content).map(([type, media]) =>
          el("div", {}, el("code", {}, type + (op.requestBody.required ? "" : " (optional)")), el("pre", {}, render(media.schema, 0))));
        body.append(section("Request body", ...parts));
      }
      const responses = Object.entries(op.responses).map(([status, response]) => {
        response = resolve(response);
        const parts = [el("span", { class: "status" }, status + " "), response.description || ""];
        for (const [type, media] of Object.entries(response.content || {})) {
          parts.push(el("div", {}, el("code", {}, type), el("pre", {}, render(media.schema, 0))));
        }
        return el("div", {}, ...parts);
      });
      body.append(section("Responses", ...responses));
      return el("details", { class: "op", id: op.operationId || "" },
        el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()),
          el("span", { class: "path" }, (doc.servers?.[0]?.url || "") + path), el("span", {}, op.summary || ""),
          el("span", { class: "role" }, role || "public")),
        body);
    };
    fetch("/api/v1/openapi.json").then(r => r.json()).then(d => {
      doc = d;
      document.getElementById("title").textContent = `${d.info.title} ${d.info.version}`;
      document.getElementById("intro").textContent = d.info.description || "";
      const groups = new Map();
      for (const [path, item] of Object.entries(d.paths)) {
        for (const [method, op] of Object.entries(item)) {
          const tag = (op.tags && op.tags[0]) || "other";
          if (!groups.has(tag)) groups.set(tag, []);
          groups.get(tag).push(operation(method, path, op));
        }
      }
      const ops = document.getElementById("ops");
      for (const [tag, items] of groups) ops.append(el("h2", {}, tag), ...items);
    }).catch(e => { document.getElementById("error").textContent = "Could not load the API description: " + e; });
    </script>
    </body>
    </html>
    """#
}
