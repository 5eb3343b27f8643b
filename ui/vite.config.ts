import { defineConfig } from "vitest/config";
import vue from "@vitejs/plugin-vue";

// The built UI is embedded in the apiscope binary and served from `/`, so asset paths are
// relative to the root; `npm run dev` proxies the API to a server on APISCOPE_UI_SERVER.
const devServer = process.env.APISCOPE_UI_SERVER ?? "http://127.0.0.1:8089";

export default defineConfig({
  plugins: [vue()],
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 400 },
  server: {
    proxy: {
      "/api": { target: devServer, ws: true },
    },
  },
  test: {
    // The logic under test needs no DOM: Node has atob, TextEncoder and URL.
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
