-- compart for Neovim: starts `compart lsp` for *.ded buffers, wires the Run/Simulate commands
-- and code lenses, and registers the tree-sitter grammar with nvim-treesitter when present.
-- Works with plain Neovim 0.7+ (vim.lsp.start_client) and with nvim-lspconfig (see lspconfig.lua).

local M = {}

local defaults = {
  -- The server command; `compart` must be on PATH unless a path is given.
  cmd = { 'compart', 'lsp' },
  -- Extra fields merged into the start_client config (on_attach, capabilities, ...).
  on_attach = nil,
  capabilities = nil,
  -- Show code lenses (Run local cluster / Simulate) and refresh them on edits.
  codelens = true,
  -- Scaling classes and inferred types as end-of-line virtual text. nil: only where Neovim has no
  -- inlay hints of its own (before 0.10; from 0.10 use vim.lsp.inlay_hint.enable()).
  virtual_text_hints = nil,
}

M.config = vim.deepcopy(defaults)
-- root_dir -> client id, so every buffer of a project shares one server.
local clients = {}

--- The directory that holds this plugin (editors/nvim), to find the grammar next to it.
local function plugin_root()
  local source = debug.getinfo(1, 'S').source:sub(2)
  return vim.fn.fnamemodify(source, ':p:h:h:h')
end

local function root_dir(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local dir = vim.fn.fnamemodify(name, ':p:h')
  local marker = vim.fn.findfile('Cargo.toml', dir .. ';')
  if marker == '' then
    marker = vim.fn.finddir('.git', dir .. ';')
  end
  if marker ~= '' then
    return vim.fn.fnamemodify(marker, ':p:h:h')
  end
  return dir
end

--- The start_client configuration (also used by the lspconfig integration).
function M.client_config(root)
  local cmd = M.config.cmd
  return {
    name = 'compart',
    cmd = cmd,
    root_dir = root,
    capabilities = M.config.capabilities or vim.lsp.protocol.make_client_capabilities(),
    -- Run/Simulate spawn `compart run|sim`: use the same executable as the server.
    init_options = { compartPath = cmd[1] ~= 'compart' and cmd[1] or nil },
    on_attach = M.on_attach,
    on_exit = function(_, _, client_id) require('compart.hints').detach_client(client_id) end,
  }
end

local function virtual_text_hints()
  if M.config.virtual_text_hints == nil then
    return not require('compart.hints').native()
  end
  return M.config.virtual_text_hints
end

--- What the plugin does when the server attaches to a buffer: code lenses, hints as virtual text,
--- then the user's on_attach. With nvim-lspconfig and an on_attach of your own, call it from there.
function M.on_attach(client, bufnr)
  if M.config.codelens then
    vim.api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave', 'BufWritePost' }, {
      buffer = bufnr,
      callback = function() pcall(vim.lsp.codelens.refresh) end,
    })
    pcall(vim.lsp.codelens.refresh)
  end
  if virtual_text_hints() then
    require('compart.hints').attach(client, bufnr)
  end
  if M.config.on_attach then
    M.config.on_attach(client, bufnr)
  end
end

--- Start (or reuse) the server for a buffer and attach it.
function M.attach(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local root = root_dir(bufnr)
  local id = clients[root]
  if not id or not vim.lsp.get_client_by_id(id) then
    id = vim.lsp.start_client(M.client_config(root))
    if not id then
      vim.notify('compart: could not start ' .. table.concat(M.config.cmd, ' '), vim.log.levels.ERROR)
      return nil
    end
    clients[root] = id
  end
  vim.lsp.buf_attach_client(bufnr, id)
  return id
end

local function compart_client(bufnr)
  for _, client in pairs(vim.lsp.buf_get_clients(bufnr)) do
    if client.name == 'compart' then
      return client
    end
  end
  return nil
end

--- Run `compart.run` / `compart.simulate` on the current file through the server; progress and
--- output arrive as $/progress and window/logMessage (see :messages or :LspLog).
function M.execute(command, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = compart_client(bufnr)
  if not client then
    vim.notify('compart: no server attached to this buffer', vim.log.levels.WARN)
    return
  end
  local uri = vim.uri_from_bufnr(bufnr)
  client.request('workspace/executeCommand', { command = command, arguments = { uri } }, function(err, result)
    if err then
      vim.notify('compart: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif result then
      vim.notify(string.format('compart: %s (exit %s)\n%s', command, tostring(result.exitCode), result.summary or ''))
    end
  end, bufnr)
end

function M.restart()
  for root, id in pairs(clients) do
    local client = vim.lsp.get_client_by_id(id)
    if client then
      client.stop()
    end
    clients[root] = nil
  end
  vim.defer_fn(function()
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and vim.bo[buf].filetype == 'compart' then
        M.attach(buf)
      end
    end
  end, 200)
end

--- Register the grammar with nvim-treesitter (`:TSInstall compart` then builds grammar/src/parser.c and scanner.c).
function M.register_treesitter()
  local ok, parsers = pcall(require, 'nvim-treesitter.parsers')
  if not ok then
    return false
  end
  parsers.get_parser_configs().compart = {
    install_info = { url = plugin_root() .. '/../../grammar', files = { 'src/parser.c', 'src/scanner.c' } },
    filetype = 'compart',
  }
  return true
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  -- Code lenses call these client-side command names.
  vim.lsp.commands['compart.run'] = function(cmd, ctx) M.execute(cmd.command, ctx.bufnr) end
  vim.lsp.commands['compart.simulate'] = function(cmd, ctx) M.execute(cmd.command, ctx.bufnr) end
  vim.cmd([[
    command! CompartRun lua require('compart').execute('compart.run')
    command! CompartSimulate lua require('compart').execute('compart.simulate')
    command! CompartRestart lua require('compart').restart()
  ]])
  M.register_treesitter()
  if opts and opts.autostart == false then
    return
  end
  vim.cmd([[
    augroup compart_lsp
      autocmd!
      autocmd FileType compart lua require('compart').attach(tonumber(vim.fn.expand('<abuf>')))
    augroup END
  ]])
end

return M
