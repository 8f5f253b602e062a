// Package web holds the demo page and browser client that the edge serves at /.
package web

import "embed"

// FS holds index.html, app.js, pgrelay.js (the browser client) and style.css.
//
//go:embed index.html app.js pgrelay.js style.css
var FS embed.FS
