// The interactive API reference at /docs: Swagger UI (vendored) reading /openapi.json.
/* global SwaggerUIBundle */
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
});
