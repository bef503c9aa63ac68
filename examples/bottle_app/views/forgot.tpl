% rebase('base', title='Forgot password')
<h1>Forgot password</h1>
<p>Enter the address of your account; we will send it a link to set a new password.</p>
<form method="post">
  <input type="hidden" name="csrf" value="{{csrf}}">
  <label for="email">Email</label>
  <input type="email" id="email" name="email" autocomplete="email" required>
  <button type="submit">Send the link</button>
</form>
