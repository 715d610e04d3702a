-- nvim-lspconfig integration: `require('compart.lspconfig').register()` then
-- `require('lspconfig').compart.setup({})` like any other server.
local M = {}

function M.register(opts)
  local configs = require('lspconfig.configs')
  local util = require('lspconfig.util')
  local compart = require('compart')
  compart.config = vim.tbl_deep_extend('force', compart.config, opts or {})
  if not configs.compart then
    configs.compart = {
      default_config = {
        cmd = compart.config.cmd,
        filetypes = { 'compart' },
        root_dir = util.root_pattern('Cargo.toml', '.git'),
        init_options = { compartPath = compart.config.cmd[1] ~= 'compart' and compart.config.cmd[1] or nil },
        single_file_support = true,
        -- Code lenses and hints as virtual text (an on_attach given to setup() replaces this one).
        on_attach = compart.on_attach,
      },
      docs = { description = 'compart language server (`compart lsp`) for .ded protocols' },
    }
  end
  vim.lsp.commands['compart.run'] = function(cmd, ctx) compart.execute(cmd.command, ctx.bufnr) end
  vim.lsp.commands['compart.simulate'] = function(cmd, ctx) compart.execute(cmd.command, ctx.bufnr) end
  compart.register_treesitter()
end

return M
